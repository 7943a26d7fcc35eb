// SPDX-License-Identifier: MIT
/*
 * A user-space driver for QEMU's edu device through iommufd and the VFIO cdev:
 * bind, attach to an IOAS, map two buffers, DMA RAM -> device -> RAM through the IOMMU,
 * check the bytes, detach, check DMA is blocked, unmap.
 *
 * The same binary runs on the real kernel (the oracle guest, edu bound to vfio-pci) and,
 * unchanged, against the simulator: `ioasid run -- examples/c/edu`.
 *
 *   cc -Wall -O2 -I tests/uapi/include -o edu examples/c/edu.c
 *   ./edu [/dev/vfio/devices/vfioN]
 *
 * Prints one "key value" line per step; exits 0 only if every step went as expected.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/iommufd.h>
#include <linux/vfio.h>

#define EDU_BUF 0x40000
#define IOVA_SRC 0x100000ULL
#define IOVA_DST 0x200000ULL
#define LEN 256

static int fail(const char *what)
{
	fprintf(stderr, "edu: %s: %s\n", what, strerror(errno));
	exit(1);
}

static uint64_t bar0_off, config_off;

static void region(int dev, unsigned int index, uint64_t *offset)
{
	struct vfio_region_info info = { .argsz = sizeof(info), .index = index };

	if (ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &info))
		fail("VFIO_DEVICE_GET_REGION_INFO");
	*offset = info.offset;
}

static uint64_t rd(int dev, uint64_t base, uint64_t off, size_t n)
{
	uint64_t v = 0;

	if (pread(dev, &v, n, base + off) != (ssize_t)n)
		fail("pread");
	return v;
}

static void wr(int dev, uint64_t base, uint64_t off, uint64_t v, size_t n)
{
	if (pwrite(dev, &v, n, base + off) != (ssize_t)n)
		fail("pwrite");
}

/* Program edu's DMA engine and wait for it to clear the start bit. */
static void dma(int dev, uint64_t src, uint64_t dst, uint64_t n, int to_ram)
{
	struct timespec t = { 0, 10 * 1000 * 1000 };
	int i;

	wr(dev, bar0_off, 0x80, src, 8);
	wr(dev, bar0_off, 0x88, dst, 8);
	wr(dev, bar0_off, 0x90, n, 8);
	wr(dev, bar0_off, 0x98, 1 | (to_ram ? 2 : 0), 8);
	for (i = 0; rd(dev, bar0_off, 0x98, 8) & 1; i++) {
		if (i == 1000) {
			errno = ETIMEDOUT;
			fail("edu DMA");
		}
		nanosleep(&t, NULL);
	}
}

static void map(int iommufd, uint32_t ioas, void *va, uint64_t iova)
{
	struct iommu_ioas_map map = {
		.size = sizeof(map),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
			 IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = ioas,
		.user_va = (uintptr_t)va,
		.length = 4096,
		.iova = iova,
	};

	if (ioctl(iommufd, IOMMU_IOAS_MAP, &map))
		fail("IOMMU_IOAS_MAP");
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "/dev/vfio/devices/vfio0";
	uint8_t pattern[LEN], *src, *dst;
	int iommufd, dev, i, ok;

	for (i = 0; i < LEN; i++)
		pattern[i] = (uint8_t)(i * 7 + 3);

	iommufd = open("/dev/iommu", O_RDWR);
	if (iommufd < 0)
		fail("open /dev/iommu");
	dev = open(path, O_RDWR);
	if (dev < 0)
		fail(path);

	struct vfio_device_bind_iommufd bind = {
		.argsz = sizeof(bind), .iommufd = iommufd,
	};
	if (ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &bind))
		fail("VFIO_DEVICE_BIND_IOMMUFD");
	printf("devid %u\n", bind.out_devid);

	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	if (ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc))
		fail("IOMMU_IOAS_ALLOC");
	printf("ioas %u\n", alloc.out_ioas_id);

	struct vfio_device_attach_iommufd_pt attach = {
		.argsz = sizeof(attach), .pt_id = alloc.out_ioas_id,
	};
	if (ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach))
		fail("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
	printf("hwpt %u\n", attach.pt_id);

	src = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	dst = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (src == MAP_FAILED || dst == MAP_FAILED)
		fail("mmap");
	memcpy(src, pattern, LEN);
	map(iommufd, alloc.out_ioas_id, src, IOVA_SRC);
	map(iommufd, alloc.out_ioas_id, dst, IOVA_DST);

	region(dev, VFIO_PCI_CONFIG_REGION_INDEX, &config_off);
	region(dev, VFIO_PCI_BAR0_REGION_INDEX, &bar0_off);
	wr(dev, config_off, 4, rd(dev, config_off, 4, 2) | 0x6, 2); /* MEM + bus master */
	printf("ident %#llx\n", (unsigned long long)rd(dev, bar0_off, 0, 4));

	dma(dev, IOVA_SRC, EDU_BUF, LEN, 0);
	dma(dev, EDU_BUF, IOVA_DST, LEN, 1);
	ok = !memcmp(dst, pattern, LEN);
	printf("dma %s\n", ok ? "ok" : "MISMATCH");

	struct vfio_device_detach_iommufd_pt detach = { .argsz = sizeof(detach) };
	if (ioctl(dev, VFIO_DEVICE_DETACH_IOMMUFD_PT, &detach))
		fail("VFIO_DEVICE_DETACH_IOMMUFD_PT");
	memset(dst, 0, LEN);
	dma(dev, EDU_BUF, IOVA_DST, LEN, 1);
	for (i = 0; i < LEN && !dst[i]; i++)
		;
	printf("blocked after detach %s\n", i == LEN ? "yes" : "NO");
	ok = ok && i == LEN;

	struct iommu_ioas_unmap unmap = {
		.size = sizeof(unmap), .ioas_id = alloc.out_ioas_id, .length = UINT64_MAX,
	};
	if (ioctl(iommufd, IOMMU_IOAS_UNMAP, &unmap))
		fail("IOMMU_IOAS_UNMAP");
	printf("unmapped %llu\n", (unsigned long long)unmap.length);

	close(dev);
	close(iommufd);
	return ok ? 0 : 1;
}
