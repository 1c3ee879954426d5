"""The folders are the pipeline: no import cycle, and no import pointing back up the pipeline."""

from package_graph import imports, modules

# In pipeline order; a module may import from its own layer and the layers before it. The learned
# judge is fitted on the campaign log before any model, whose training selects its epoch with it.
LAYERS = ("core", "data", "judges", "model", "experiments", "report", "entry")
CORE = {"config", "cache", "errors", "files", "provenance", "runtime", "stats", "llm", "paper", "domains"}
ENTRY = {"slm4offer.cli", "slm4offer.__main__"}


def layer(module: str) -> int:
    if module in ENTRY:
        return LAYERS.index("entry")
    if module == "slm4offer":  # the package itself: its version and the config's two names
        return LAYERS.index("core")
    top = module.split(".")[1]
    return LAYERS.index("core") if top in CORE else LAYERS.index(top)


def test_every_module_has_a_layer():
    for m in modules():
        assert 0 <= layer(m) < len(LAYERS), m


def test_no_import_points_back_up_the_pipeline():
    back = [f"{m} ({LAYERS[layer(m)]}) imports {d} ({LAYERS[layer(d)]})"
            for m in modules() for d in imports(m) if layer(d) > layer(m)]
    assert not back, "\n".join(back)


def test_no_import_cycle():
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> list[str] | None:
        state[m] = 1
        for d in sorted(imports(m)):
            if state.get(d) == 1:
                return [*path, m, d]
            if d not in state and (cycle := visit(d, [*path, m])):
                return cycle
        state[m] = 2
        return None

    for m in modules():
        if m not in state:
            cycle = visit(m, [])
            assert cycle is None, " -> ".join(cycle[cycle.index(cycle[-1]):])


def test_the_checks_see_an_import_back_up_and_a_cycle(monkeypatch):
    import package_graph

    fake = {"slm4offer.data.world": frozenset({"slm4offer.report.tables"}),
            "slm4offer.report.tables": frozenset({"slm4offer.data.world"})}
    monkeypatch.setattr(package_graph, "imports", lambda m: fake.get(m, frozenset()))
    monkeypatch.setattr("test_layout.imports", package_graph.imports)
    back = [(m, d) for m in fake for d in package_graph.imports(m) if layer(d) > layer(m)]
    assert back == [("slm4offer.data.world", "slm4offer.report.tables")]


def test_experiments_write_nothing():
    """They return frames; `report` writes them (and caches belong to the stages below)."""
    writers = {"slm4offer.files", "slm4offer.report.outputs"}
    for m in modules():
        if m.startswith("slm4offer.experiments"):
            assert not imports(m) & writers, f"{m} imports {sorted(imports(m) & writers)}"
