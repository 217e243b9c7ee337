"""The dataset-neutral shape the evaluations replay: one member's interaction with one or more products."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Line:
    """One product of an interaction (an order has several)."""

    sku: str
    brand: str = ""
    category: str = ""
    price: float = 0.0
    quantity: int = 1


@dataclass(slots=True)
class Interaction:
    """A browse / fav / cart / order of a member at ``t`` (epoch seconds).

    ``action`` is ``add`` or ``remove`` for a cart (a removal is a negative signal, never a target).

    >>> Interaction(0.0, "m", "cart", [Line("a")], action="remove").positive
    False
    >>> Interaction(0.0, "m", "order", [Line("a"), Line("b")]).positive
    True
    """

    t: float
    member: str
    kind: str
    lines: list[Line]
    action: str = "add"
    session: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def positive(self) -> bool:
        """A cart add or an order: what a member chose (the targets of the ranking tasks)."""
        return self.kind == "order" or (self.kind == "cart" and self.action == "add")
