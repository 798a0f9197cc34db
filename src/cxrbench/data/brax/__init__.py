"""BRAX (Reis et al., Sci Data 2022): loader and synthetic writer of the PhysioNet 1.1.0 release."""
