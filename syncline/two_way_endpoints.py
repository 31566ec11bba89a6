"""One side of a two-way integration, opened: the source it is read from and the targets it
is written through, built from the spec's two one-way views."""

from __future__ import annotations

from dataclasses import dataclass

from connectors.base.records import FetchingSource, RecordTarget
from syncline.connect import ConnectorFactory, ConnectorUnavailableError
from syncline.specs import SourceSpec
from syncline.two_way import TwoWaySpec
from syncline.two_way_merge import Side


@dataclass(slots=True)
class Endpoint:
    """One side of a two-way integration, opened: where its changes are read and how it is
    written (by its own key, and by the field holding the other side's key for creates)."""

    side: Side
    spec: SourceSpec
    link_field: str
    cursor_name: str
    source: FetchingSource
    by_key: RecordTarget
    by_link: RecordTarget

    @property
    def name(self) -> str:
        return f"{self.spec.connector}:{self.spec.object}"

    async def aclose(self) -> None:
        for part in (self.source, self.by_key, self.by_link):
            await part.aclose()


def open_endpoints(spec: TwoWaySpec, factory: ConnectorFactory) -> tuple[Endpoint, Endpoint]:
    """Both sides' connectors, from the spec's two views (A→B reads A and writes B, …)."""
    a_to_b, b_to_a = spec.views()
    ends: list[Endpoint] = []
    for side, view, back in (("a", a_to_b, b_to_a), ("b", b_to_a, a_to_b)):
        source = factory.source(view)
        if not isinstance(source, FetchingSource):
            raise ConnectorUnavailableError(
                f"{side}.connector: {view.source.connector!r} cannot look records up by key, "
                "which a two-way side needs"
            )
        endpoint = spec.a if side == "a" else spec.b
        by_own_key = back.model_copy(
            update={"target": back.target.model_copy(update={"key": endpoint.key})}
        )
        ends.append(
            Endpoint(
                side="a" if side == "a" else "b",
                spec=endpoint,
                link_field=back.target.key,
                cursor_name=view.name,
                source=source,
                by_key=factory.target(by_own_key),
                by_link=factory.target(back),
            )
        )
    return ends[0], ends[1]
