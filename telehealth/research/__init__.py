"""Secondary use: research projects, disclosure-controlled aggregates, releases and the register."""
