import argparse


def main(argv=None):
    argparse.ArgumentParser(prog="evalkit").print_help()
    return 0
