"""Medical image input and output (DICOM, NIfTI/NRRD/MHA, 2D images) for d24fad."""
