"""The simulated machine under the simulated kernel: I/O page tables (``pagetable``), IOTLBs
(``iotlb``), IOMMU units with their capabilities and attach rules (``iommu``), device DMA
engines (``dma``) and memory (``memory``)."""
