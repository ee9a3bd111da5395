"""What keeps documents from someone else from making this machine connect where they should not."""
