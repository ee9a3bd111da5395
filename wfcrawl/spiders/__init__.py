"""Spiders: the generic WorkflowSpider."""
