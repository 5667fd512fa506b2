"""python -m training.genesets [--check]"""
import sys

from .build import main

main(sys.argv[1:])
