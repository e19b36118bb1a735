"""Model packages: card.yaml + weights, verified before use, listed by a registry.

* :mod:`.card` - the typed, validated ``ModelCard`` (``load_card``, ``parse_card``, ``sha256_path``);
* :mod:`.package` - ``load_package(path_or_name) -> ModelPackage`` (``.card``, ``.path``,
  ``.verify()``, ``.build(device)``, ``.prepare_input(study, follow_up)``), ``save_package``,
  ``zip_package``;
* :mod:`.registry` - shipped packages (``weights/<name>/``) and the user's folder: ``available()``,
  ``resolve(name)``, ``add(path)``, ``verify(name)``;
* :mod:`.cli` - ``breastmri models list|add|verify``; :mod:`.networks` - the demo networks.

Nothing here imports torch at module level; building a network does. Format: docs/model-packages.md.
"""
