"""What the tests share: fake data (fakes), a tiny extractor registered with
torch-fidelity (tiny_extractor), Lightning callbacks that slow or signal a run
(callbacks), host-read and operator recorders (reads), the CLI's common options and
error reading (cli), run directories as fit leaves them (report), and activations with
known clusters (activations)."""
