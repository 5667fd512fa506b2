// Reads a dropped HDF5 sample (AnnData .h5ad, 10x Genomics .h5) off the page's thread: jsfive
// parses the file from its ArrayBuffer and js/hdf5.js sums its cells into the counts table the
// runtime reads. Message in: { buffer, fileName, groupby, layer }; out: { text, description,
// samples, obsColumns, layers } or { error, obsColumns, layers }.

import * as jsfive from '/vendor/jsfive/index.mjs';
import { hdf5Choices, pseudobulkHdf5 } from '/js/hdf5.js';

self.onmessage = ({ data: { buffer, fileName, groupby, layer } }) => {
  let file;
  try {
    file = new jsfive.File(buffer, fileName);
  } catch (e) {
    self.postMessage({ error: `not a readable HDF5 file (${e?.message ?? e})`, obsColumns: [], layers: [] });
    return;
  }
  const choices = hdf5Choices(file);
  try {
    self.postMessage({ ...pseudobulkHdf5(file, { fileName, groupby, layer }), ...choices });
  } catch (e) {
    self.postMessage({ error: e?.message ?? String(e), ...choices });
  }
};
