"""covidct: train, compare, explain and deploy CNN classifiers for COVID-19 on chest CT.

Reproduces and extends Garg et al., "Efficient and Visualizable Convolutional Neural Networks for COVID-19
Classification Using Chest CT" (Expert Systems with Applications, 2022; arXiv:2012.11860).

This module stays import-light (no torch) so that ``covidct --help`` is fast.
"""

__version__ = "0.2.0"

__all__ = ["__version__"]
