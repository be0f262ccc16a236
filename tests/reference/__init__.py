"""Literal references that tests (and benchmarks) compare p3m against: published code transcribed as plainly as
possible, and the code a speed-up replaced. Nothing here is to be fixed or sped up; see README.md for where each
module comes from. Oracles written for one test (loops over a formula) stay beside that test."""
