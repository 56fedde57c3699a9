"""Data layer: IDX files, dataset sources, in-memory batches and augmentation."""
