"""Where an op runs: a local child, SSH or Tagent; output decoding and what a crashed run left behind."""
