"""What every dataset loader shares: samples, CSV and image reading, run-length masks, DICOM headers, dataset settings, image sizes, the mask-reader base and the synthetic chest generator."""
