"""Cron schedules of workflows and the ``wfcrawl scheduler`` service.

:mod:`wfcrawl.scheduling.cron` reads and checks ``schedule:`` blocks and lists
their slots; :mod:`wfcrawl.scheduling.locks` makes sure several scheduler
replicas launch each slot once; :mod:`wfcrawl.scheduling.service` is the loop.
"""
