-- Silenced exceptions grouped by type, handler and outcome, most frequent first.
SELECT type, handler_function, handler_file, handler_line, outcome, count(*) AS times, min(message) AS example
FROM silenced
GROUP BY type, handler_function, handler_file, handler_line, outcome
ORDER BY times DESC, handler_file, handler_line
