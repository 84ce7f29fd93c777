"""Offline feature archives: fairseq S2T style fbank80.zip + TSV manifests."""
