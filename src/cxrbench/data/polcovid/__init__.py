"""POLCOVID: normal / pneumonia / COVID-19 chest radiographs from Polish hospitals."""
