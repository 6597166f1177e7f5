"""A library module of the estate's own tree (plugins/local/lib), as tools of the original import them."""
import configparser
import os


def tree_config():
    """conf/config.ini of the installation, found three levels above this file's real path."""
    home = os.path.realpath(os.path.split(os.path.realpath(__file__))[0] + '/../../..')
    cfg = configparser.ConfigParser()
    cfg.read(home + '/conf/config.ini')
    return cfg


def greeting(name):
    return 'estate lib greets {}'.format(name)
