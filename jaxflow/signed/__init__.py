"""Signed graphs of networks: matrix-free blocks, frustration estimators, null models."""

from .graph import (
    Activation as Activation,
)
from .graph import (
    Block as Block,
)
from .graph import (
    Conv2d as Conv2d,
)
from .graph import (
    Dense as Dense,
)
from .graph import (
    Layer as Layer,
)
from .graph import (
    Pool as Pool,
)
from .graph import (
    Route as Route,
)
from .graph import (
    SignedGraph as SignedGraph,
)
from .graph import (
    Skip as Skip,
)
