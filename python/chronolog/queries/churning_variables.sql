-- Variables that changed most often, per function, with their first and last values.
SELECT function, name,
       count(*) AS changes,
       first_value(repr ORDER BY seq) AS first_value,
       last_value(repr ORDER BY seq) AS last_value
FROM vars
WHERE change IN ('new', 'modified')
GROUP BY trace, function, name
ORDER BY changes DESC, function, name
LIMIT 20
