"""Cron schedules of workflows and the ``wfcrawl scheduler`` service.

:mod:`wfcrawl.workflow.schedule` reads and checks ``schedule:`` blocks and lists
their slots; :mod:`wfcrawl.cron.locks` makes sure several scheduler
replicas launch each slot once; :mod:`wfcrawl.cron.service` is the loop.
"""
