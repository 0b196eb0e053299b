"""Labels: classification encoding, segmentation masks on the image grid, splits."""
