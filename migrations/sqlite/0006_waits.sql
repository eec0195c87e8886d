-- A run suspended in `wait-for-event` keeps its timer (the timeout) and names the event it
-- awaits here, so an ingest that stores that event for the run's person makes the timer due at
-- once. The woken activation decides whether the event matches (its `where`); if not, the run
-- waits again. NULL for every other timer.
ALTER TABLE timers ADD COLUMN wait_event TEXT;
