-- Step 5 — who gets a row: every member of the audience (any status), and every live contact
-- with a group_contact row or any history row for the group that no member matched.
-- Each row gathers both sides' state, the contact's best email, and the facts the rules test.
CREATE OR REPLACE TEMP TABLE people AS
WITH rows AS (
    SELECT m.member_id, mm.contact_id, mm.n_owners, mm.match_step
    FROM m_member m LEFT JOIN m_match mm USING (member_id)
    UNION ALL
    SELECT NULL, s.contact_id, NULL, NULL
    FROM c_state s
    WHERE s.in_population
      AND s.contact_id NOT IN (SELECT contact_id FROM m_match)
)
SELECT r.member_id,
       r.contact_id,
       r.match_step,
       m.email_address,
       m.norm AS member_norm,
       m.status AS mailchimp_status,
       m.last_changed AS mailchimp_changed,
       coalesce(m.mc_in, false) AS mc_in,
       m.member_id IS NOT NULL AS has_member,
       c.display_name,
       coalesce(s.civi_in, false) AS civi_in,
       s.gc_status,
       s.history_status,
       s.civicrm_changed,
       coalesce(s.has_history, false) AS has_history,
       coalesce(s.in_population, false) AS in_population,
       coalesce(s.consent_withheld, false) AS consent_withheld,
       b.best_email,
       b.best_norm,
       -- R2: another member matched to the same contact is MC-in.
       coalesce(r.contact_id IS NOT NULL AND
                count(*) FILTER (WHERE m.mc_in) OVER (PARTITION BY r.contact_id)
                  - CASE WHEN m.mc_in THEN 1 ELSE 0 END > 0, false) AS other_member_in,
       -- R6: the best email is already a member (which, being unmatched here, is another's).
       b.best_norm IN (SELECT norm FROM m_member) AS best_email_is_member,
       -- R7: the member's address is on hold anywhere in CiviCRM.
       m.norm IN (SELECT norm FROM c_on_hold) AS member_on_hold,
       CASE WHEN m.member_id IS NOT NULL THEN coalesce(r.n_owners, 0) > 1
            ELSE (SELECT count(*) FROM c_owner o WHERE o.norm = b.best_norm) > 1
       END AS duplicate_contacts,
       m.norm IN (SELECT norm FROM c_trashed_email) AS contact_deleted
FROM rows r
LEFT JOIN m_member m USING (member_id)
LEFT JOIN c_contact c ON c.contact_id = r.contact_id
LEFT JOIN c_state s ON s.contact_id = r.contact_id
LEFT JOIN c_best b ON b.contact_id = r.contact_id;
