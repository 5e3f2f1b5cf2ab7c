-- Calls per function: how many, how many ended by an exception, total, mean and longest duration.
SELECT function,
       count(*) AS calls,
       sum(CASE WHEN exit = 'unwind' THEN 1 ELSE 0 END) AS unwound,
       sum(duration_ns) AS total_ns,
       CAST(avg(duration_ns) AS BIGINT) AS mean_ns,
       max(duration_ns) AS max_ns
FROM calls
GROUP BY function
ORDER BY total_ns DESC NULLS LAST, function
