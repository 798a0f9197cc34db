"""CheXpert (Irvin et al., AAAI 2019): the 14 observations of the radiology-report labeller."""
