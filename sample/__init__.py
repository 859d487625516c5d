"""Sample data: deterministic synthetic department files with injected defects and their truth
(`sample.generate`, `generate_spatial`, `generate_iot`, the base map, the identifier oracle), and the
evaluation of the lake against that truth (`sample.evaluate`). The runtime never imports the generators
(nor Faker); `lake run` evaluates against the truth only when the inbox it ran on has one."""
