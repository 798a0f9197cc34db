"""JSRT chest radiographs with the SCR anatomy masks, and radiographs of a CT phantom in their layout."""
