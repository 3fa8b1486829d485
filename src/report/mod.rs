//! Comparing runs: tables, plots, statistics over seeds (`speedrun compare`).
