"""PadChest (Bustos et al., Medical Image Analysis 2020): lateral-view findings."""
