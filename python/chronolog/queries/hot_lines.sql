-- The 20 lines executed most often, with their source text.
SELECT e.file, e.function, e.line, count(*) AS runs, min(s.text) AS text
FROM events e
LEFT JOIN source s ON s.trace = e.trace AND s.file = e.file AND s.line = e.line
WHERE e.kind = 'line'
GROUP BY e.file, e.function, e.line
ORDER BY runs DESC, e.file, e.line
LIMIT 20
