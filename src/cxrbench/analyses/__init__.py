"""What is computed over stored runs and rendered as tables: the label-efficiency curve (`efficiency`), the bias
protocol's same-group against other-group comparison (`bias`) and the check that every stored number and committed
table can be recomputed from the stored predictions (`check`). Above `results` (the store) and `tables` (rendering)."""
