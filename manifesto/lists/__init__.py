"""The one index engine: what a list entry is, what makes a list valid, and how it is pushed.

entry.py (the one entry type), rules.py (media-type choice, problems as values, index
building), sources.py (reading images and indexes to list), push.py (children into the target →
verify from the target → arch tags → index under every tag), drafts.py (local drafts of the
`docker manifest`-style verbs), edit.py (a change to the list a tag holds, for `index add|rm`).
"""
