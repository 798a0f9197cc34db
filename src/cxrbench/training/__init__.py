"""Training inputs computed online through the frozen encoder (`online`) under augmentation (`augment`)."""
