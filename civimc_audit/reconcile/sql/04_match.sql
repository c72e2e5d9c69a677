-- Step 4 — matching a member to a contact (DESIGN "Matching a member to a contact"), which
-- decides whose CiviCRM state every member row is judged by (R1–R5, R7–R9):
--   1) the one live contact owning the email; else
--   2) the lowest contact id owning it that is Civi-in; else
--   3) the lowest id with any history for the group; else
--   4) the lowest id owning it.
-- Deleted contacts never match (c_owner holds live contacts only). More than one owner sets
-- flag duplicate_contacts. A member no contact owns stays unmatched (R3 creates a contact).
CREATE OR REPLACE TEMP TABLE m_match AS
SELECT m.member_id,
       count(*) AS n_owners,
       CASE
           WHEN count(*) = 1 THEN min(o.contact_id)
           WHEN bool_or(s.civi_in) THEN min(o.contact_id) FILTER (WHERE s.civi_in)
           WHEN bool_or(s.has_history) THEN min(o.contact_id) FILTER (WHERE s.has_history)
           ELSE min(o.contact_id)
       END AS contact_id,
       CASE
           WHEN count(*) = 1 THEN 1
           WHEN bool_or(s.civi_in) THEN 2
           WHEN bool_or(s.has_history) THEN 3
           ELSE 4
       END AS match_step
FROM m_member m
JOIN c_owner o ON o.norm = m.norm
JOIN c_state s ON s.contact_id = o.contact_id
GROUP BY m.member_id;
