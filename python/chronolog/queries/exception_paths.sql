-- Every exception's path: where it was raised, the frames it went through, and its last event.
SELECT exc_id,
       min(type) AS type,
       min(message) AS message,
       string_agg(function, ' > ' ORDER BY seq) FILTER (WHERE event = 'raise') AS frames,
       last_value(event ORDER BY seq) AS last_event,
       last_value(function ORDER BY seq) AS last_function
FROM exceptions
GROUP BY trace, exc_id
ORDER BY min(seq)
