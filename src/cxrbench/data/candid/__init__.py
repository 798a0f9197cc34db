"""CANDID-PTX (Feng et al., Radiology: AI 2021): pneumothorax, chest tube and rib fracture labels (ptx) and masks (seg)."""
