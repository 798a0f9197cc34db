"""AASCE 2019 / BoostNet spine radiographs: Cobb angles as regression targets."""
