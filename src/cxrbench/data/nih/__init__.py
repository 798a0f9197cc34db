"""NIH ChestX-ray14 (Wang et al., CVPR 2017): 14 findings mined from reports, with the official train/test lists."""
