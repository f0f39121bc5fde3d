"""Deep linear networks: the network, its task, the gradient flow and the landscape."""

from .flow import (
    end_to_end_loss as end_to_end_loss,
)
from .flow import (
    loss as loss,
)
from .flow import (
    loss_adjacency as loss_adjacency,
)
from .flow import (
    vector_field as vector_field,
)
from .flow import (
    vector_field_adjacency as vector_field_adjacency,
)
from .network import DeepLinearNetwork as DeepLinearNetwork
from .task import Task as Task
