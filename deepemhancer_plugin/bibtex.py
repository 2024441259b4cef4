# **************************************************************************
# *
# * This program is free software; you can redistribute it and/or modify
# * it under the terms of the GNU General Public License as published by
# * the Free Software Foundation; either version 3 of the License, or
# * (at your option) any later version.
# *
# **************************************************************************
"""
@article{SanchezGarcia2021,
  title = {DeepEMhancer: a deep learning solution for cryo-EM volume post-processing},
  author = {Sanchez-Garcia, Ruben and Gomez-Blanco, Josue and Cuervo, Ana and Carazo, Jose Maria and Sorzano, Carlos Oscar S. and Vargas, Javier},
  journal = {Communications Biology},
  volume = {4},
  number = {1},
  pages = {874},
  year = {2021},
  doi = {10.1038/s42003-021-02399-1},
  url = {https://doi.org/10.1038/s42003-021-02399-1}
}
"""
