"""RANZCR CLiP (Kaggle 2020): catheter and line positions on ChestX-ray14 images; loader and synthetic writer."""
