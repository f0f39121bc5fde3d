"""Signed graphs of networks: matrix-free blocks, frustration estimators, null models."""

from .frustration import FrustrationResult as FrustrationResult
from .frustration import SearchSettings as SearchSettings
from .frustration import block_frustration as block_frustration
from .frustration import frustration as frustration
from .frustration import gauge_frustration as gauge_frustration
from .graph import Activation as Activation
from .graph import Block as Block
from .graph import Conv2d as Conv2d
from .graph import Dense as Dense
from .graph import Layer as Layer
from .graph import Pool as Pool
from .graph import Route as Route
from .graph import SignedGraph as SignedGraph
from .graph import Skip as Skip
from .nullmodels import NullModelResult as NullModelResult
from .nullmodels import null_model_frustration as null_model_frustration
from .nullmodels import shuffle_signs as shuffle_signs
