"""Tests of the lab's zrok and OpenZiti stand-in (tests/zrok_standin)."""
