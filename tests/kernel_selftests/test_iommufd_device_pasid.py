"""``FIXTURE(iommufd_device_pasid)`` of ``tools/testing/selftests/iommu/iommufd.c`` (Linux
7.3): ``pasid_attach`` on both variants (``no_pasid`` adds a device without PASID support,
``has_pasid`` does not). Covers PASID attach/replace/detach of paging, nested (on a
nesting parent and on a vIOMMU) and IOPF HWPTs, the PASID-compatibility rules, and the
mock's designed ENOMEM on PASID 1024.

Tests are ``test_iommufd_device_pasid__<variant>__<name>``.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

import pytest

from ioasid import uapi

from . import utils
from .utils import (
    TEST_F,
    Fixture,
    _test_cmd_pasid_op,
    expect_errno,
)
from .viommu_utils import _test_cmd_viommu_alloc

pytestmark = pytest.mark.oracle


@dataclass(frozen=True)
class Variant:
    pasid_capable: bool


VARIANTS = {"no_pasid": Variant(False), "has_pasid": Variant(True)}


class IommufdDevicePasid(Fixture):
    """``FIXTURE(iommufd_device_pasid)``: ioas_id, hwpt_id, stdev_id, device_id,
    no_pasid_stdev_id, no_pasid_device_id."""

    no_pasid_stdev_id = 0
    no_pasid_device_id = 0

    def __init__(self, backend: ModuleType, variant: Variant) -> None:
        super().__init__(backend)
        self.variant = variant
        self.ioas_id = self.test_ioctl_ioas_alloc()
        self.stdev_id, self.hwpt_id, self.device_id = self.test_cmd_mock_domain_flags(
            self.ioas_id, uapi.MOCK_FLAGS_DEVICE_PASID
        )
        if not variant.pasid_capable:
            self.no_pasid_stdev_id, _, self.no_pasid_device_id = self.test_cmd_mock_domain_flags(
                self.ioas_id, 0
            )

    def check_hwpt(self, pasid: int, hwpt_id: int) -> None:
        """``ASSERT_EQ(0, test_cmd_pasid_check_hwpt(self->fd, self->stdev_id, ...))``."""
        assert utils.test_cmd_pasid_check_hwpt(self._fd, self.stdev_id, pasid, hwpt_id) == 0


@pytest.fixture
def self(backend: ModuleType, request: pytest.FixtureRequest) -> Iterator[IommufdDevicePasid]:
    fixture = IommufdDevicePasid(backend, request.function.variant)
    yield fixture
    fixture.teardown()


iommufd_device_pasid = TEST_F("iommufd_device_pasid", VARIANTS, globals())


@iommufd_device_pasid
def pasid_attach(self: IommufdDevicePasid) -> None:
    data = uapi.iommu_hwpt_selftest(iotlb=uapi.IOMMU_TEST_IOTLB_DEFAULT)
    sel = (uapi.IOMMU_HWPT_DATA_SELFTEST, data, ctypes.sizeof(data))
    nested_hwpt_id = [0, 0, 0]
    pasid = 100
    variant = self.variant

    # detach a pasid never attached: not expected, but no failure either
    self.test_cmd_pasid_detach(pasid)

    # two nested hwpts sharing one parent
    parent_hwpt_id = self.test_cmd_hwpt_alloc(
        self.device_id, self.ioas_id, uapi.IOMMU_HWPT_ALLOC_NEST_PARENT
    )
    for i in (0, 1):
        nested_hwpt_id[i] = self.test_cmd_hwpt_alloc_nested(
            self.device_id, parent_hwpt_id, uapi.IOMMU_HWPT_ALLOC_PASID, *sel
        )

    # fault related preparation
    fault_id, fault_fd = self.test_ioctl_fault_alloc()
    iopf_hwpt_id = self.test_cmd_hwpt_alloc_iopf(
        self.device_id,
        parent_hwpt_id,
        fault_id,
        uapi.IOMMU_HWPT_FAULT_ID_VALID | uapi.IOMMU_HWPT_ALLOC_PASID,
        *sel,
    )

    # a regular nested hwpt on a viommu
    viommu_id = _test_cmd_viommu_alloc(
        self._fd, self.device_id, parent_hwpt_id, 0, uapi.IOMMU_VIOMMU_TYPE_SELFTEST, None, 0
    )
    nested_hwpt_id[2] = self.test_cmd_hwpt_alloc_nested(
        self.device_id, viommu_id, uapi.IOMMU_HWPT_ALLOC_PASID, *sel
    )

    s2_hwpt_id = self.test_cmd_hwpt_alloc(self.device_id, self.ioas_id, uapi.IOMMU_HWPT_ALLOC_PASID)

    # RID to a non-pasid-compat domain,
    self.test_cmd_mock_domain_replace(self.stdev_id, parent_hwpt_id)
    # then attach to pasid fails
    self.test_err_pasid_attach(errno.EINVAL, pasid, s2_hwpt_id)

    # RID to a pasid-compat domain,
    self.test_cmd_mock_domain_replace(self.stdev_id, s2_hwpt_id)
    # then attach to pasid succeeds,
    self.test_cmd_pasid_attach(pasid, nested_hwpt_id[0])
    # but RID to a non-pasid-compat domain now fails
    self.test_err_mock_domain_replace(errno.EINVAL, self.stdev_id, parent_hwpt_id)
    # detach pasid 100: it has no domain
    self.test_cmd_pasid_detach(pasid)
    self.check_hwpt(pasid, 0)
    # RID is attached to a pasid-compat domain, the pasid path is not used

    if not variant.pasid_capable:
        # a PASID-compatible domain can be used by a non-PASID-capable device
        self.test_cmd_mock_domain_replace(self.no_pasid_stdev_id, nested_hwpt_id[0])
        self.test_cmd_mock_domain_replace(self.no_pasid_stdev_id, self.ioas_id)
        # pasid 100 of a non-PASID-capable device fails, pasid-compat or not
        for hwpt in (parent_hwpt_id, s2_hwpt_id):
            with expect_errno(errno.EINVAL):
                _test_cmd_pasid_op(
                    self._fd, uapi.IOMMU_TEST_OP_PASID_ATTACH, self.no_pasid_stdev_id, pasid, hwpt
                )

    # a non-pasid-compat hwpt to a pasid-capable device fails, null domain
    self.test_err_pasid_attach(errno.EINVAL, pasid, parent_hwpt_id)
    self.check_hwpt(pasid, 0)

    # an ioas to pasid 100 fails, null domain
    self.test_err_pasid_attach(errno.EINVAL, pasid, self.ioas_id)
    self.check_hwpt(pasid, 0)

    # s2_hwpt to pasid 100 succeeds
    self.test_cmd_pasid_attach(pasid, s2_hwpt_id)
    self.check_hwpt(pasid, s2_hwpt_id)

    # attach does not overwrite (use REPLACE)
    self.test_err_pasid_attach(errno.EBUSY, pasid, nested_hwpt_id[0])

    # detach for the next test
    self.test_cmd_pasid_detach(pasid)
    self.check_hwpt(pasid, 0)

    # a nested hwpt to pasid 100
    self.test_cmd_pasid_attach(pasid, nested_hwpt_id[0])
    self.check_hwpt(pasid, nested_hwpt_id[0])

    # attached already: fails
    self.test_err_pasid_attach(errno.EBUSY, pasid, nested_hwpt_id[0])

    # cleanup pasid 100
    self.test_cmd_pasid_detach(pasid)

    # replace tests
    pasid = 200
    # replace without attach: EINVAL
    self.test_err_pasid_replace(errno.EINVAL, pasid, s2_hwpt_id)

    self.test_cmd_pasid_attach(pasid, s2_hwpt_id)
    self.check_hwpt(pasid, s2_hwpt_id)

    # replace with an ioas fails, the s2 hwpt stays
    self.test_err_pasid_replace(errno.EINVAL, pasid, self.ioas_id)
    self.check_hwpt(pasid, s2_hwpt_id)

    # replace with a nested hwpt
    self.test_cmd_pasid_replace(pasid, nested_hwpt_id[0])
    self.check_hwpt(pasid, nested_hwpt_id[0])

    # replace with another nested hwpt
    self.test_cmd_pasid_replace(pasid, nested_hwpt_id[1])
    self.check_hwpt(pasid, nested_hwpt_id[1])

    # cleanup pasid 200
    self.test_cmd_pasid_detach(pasid)

    # negative tests of replace, pasid 1024
    pasid = 1024
    self.test_cmd_pasid_attach(pasid, s2_hwpt_id)
    self.check_hwpt(pasid, s2_hwpt_id)

    # the designed failure: ENOMEM, the old domain stays
    self.test_err_pasid_replace(errno.ENOMEM, pasid, nested_hwpt_id[0])
    self.check_hwpt(pasid, s2_hwpt_id)

    # cleanup pasid 1024
    self.test_cmd_pasid_detach(pasid)

    # attach to an iopf-capable hwpt
    pasid = 2048
    self.test_cmd_pasid_attach(pasid, iopf_hwpt_id)
    self.check_hwpt(pasid, iopf_hwpt_id)

    self.test_cmd_trigger_iopf_pasid(self.device_id, pasid, fault_fd)

    # replace with s2_hwpt
    self.test_cmd_pasid_replace(pasid, s2_hwpt_id)
    self.check_hwpt(pasid, s2_hwpt_id)

    # cleanup pasid 2048
    self.test_cmd_pasid_detach(pasid)

    self.test_ioctl_destroy(iopf_hwpt_id)
    os.close(fault_fd)
    self.test_ioctl_destroy(fault_id)

    # detach the s2_hwpt from the RID
    self.test_cmd_mock_domain_replace(self.stdev_id, self.ioas_id)
