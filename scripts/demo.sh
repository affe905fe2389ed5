#!/usr/bin/env bash
# Placeholder: the lead writes the real end-to-end demo here.
echo 'demo not yet written'
exit 1
