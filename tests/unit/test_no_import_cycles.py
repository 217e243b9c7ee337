"""No module of salepulse imports, directly or not, a module that imports it back (issue #11)."""

from __future__ import annotations

import grimp

PACKAGES = ("salepulse.streams", "salepulse.schemas", "salepulse.consumers", "salepulse.deploy")


def test_no_import_cycle_between_modules() -> None:
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True)
    cycles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            # a package's __init__ importing its own submodules (re-exports) is not a cycle of two concerns
            if imported.startswith(importer + ".") or importer.startswith(imported + "."):
                continue
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back:
                cycles.append(" -> ".join((importer, *back)))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
