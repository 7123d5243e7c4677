"""The agent workspace (issue 14): internal notes with mentions, canned replies, the
contact panel's merges and splits, files agents attach, and who is viewing a conversation.

Pure rules live in the modules here; state goes through the store's workspace role
(gateway/store/workspace.py) and is published on the commit path (`WorkspaceService`)."""
