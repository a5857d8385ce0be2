"""Tests of deploy/: compose, the Helm chart, the broker configuration, the trust files."""
