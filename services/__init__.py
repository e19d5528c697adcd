"""The model services of the mesh, one package per modality."""
