-- 010_example_data.sql: a small example school for the demo and the tests.
--
-- Fixed ids, so tests and the demo can name rows:
--   users      1 super_admin, 2 admin, 10..15 teachers, 100..139 students,
--              200..229 parents
--   classes    1..6 (JSS 1A .. SS 3A); class_teachers: teacher 10+k teaches
--              class 1+k as form teacher, and every teacher a second class
--   subjects   1..8
--   term       1 (2025/2026 First Term, active), 2 (Second Term, inactive)
--   students   1..40 (user id 99 + student id), spread over the six classes
--   parents    200..229; parent 200+k is linked to student 1+k, and parents
--              200..9 also to a second child (students 31..40)
--   exams      1..4 (drafts and published ones)
-- Identity sequences are moved to 1000, so rows created afterwards (by the
-- demo or a test) get ids from 1001 and never collide with these.
--
-- No user has a usable password: password_hash holds '!' (never matches).
-- Sign in for the demo with tokens from `cdc-broadcaster token`.

BEGIN;

INSERT INTO users (id, email, password_hash, first_name, last_name, role, phone) VALUES
  (1, 'proprietor@treasurehome.school', '!', 'Adebayo', 'Okonkwo', 'super_admin', '+2348030000001'),
  (2, 'admin@treasurehome.school', '!', 'Ngozi', 'Eze', 'admin', '+2348030000002'),
  (10, 'chinedu.obi@treasurehome.school', '!', 'Chinedu', 'Obi', 'teacher', '+2348030000100'),
  (11, 'funmilayo.adeyemi@treasurehome.school', '!', 'Funmilayo', 'Adeyemi', 'teacher', '+2348030000101'),
  (12, 'ibrahim.musa@treasurehome.school', '!', 'Ibrahim', 'Musa', 'teacher', '+2348030000102'),
  (13, 'grace.nwosu@treasurehome.school', '!', 'Grace', 'Nwosu', 'teacher', '+2348030000103'),
  (14, 'tunde.bakare@treasurehome.school', '!', 'Tunde', 'Bakare', 'teacher', '+2348030000104'),
  (15, 'aisha.bello@treasurehome.school', '!', 'Aisha', 'Bello', 'teacher', '+2348030000105'),
  (100, 'amaka.okafor1@students.treasurehome.school', '!', 'Amaka', 'Okafor', 'student', NULL),
  (101, 'tobi.adebayo2@students.treasurehome.school', '!', 'Tobi', 'Adebayo', 'student', NULL),
  (102, 'kelechi.nwachukwu3@students.treasurehome.school', '!', 'Kelechi', 'Nwachukwu', 'student', NULL),
  (103, 'zainab.abubakar4@students.treasurehome.school', '!', 'Zainab', 'Abubakar', 'student', NULL),
  (104, 'emeka.eze5@students.treasurehome.school', '!', 'Emeka', 'Eze', 'student', NULL),
  (105, 'bisi.ogunleye6@students.treasurehome.school', '!', 'Bisi', 'Ogunleye', 'student', NULL),
  (106, 'uche.okeke7@students.treasurehome.school', '!', 'Uche', 'Okeke', 'student', NULL),
  (107, 'halima.danjuma8@students.treasurehome.school', '!', 'Halima', 'Danjuma', 'student', NULL),
  (108, 'segun.balogun9@students.treasurehome.school', '!', 'Segun', 'Balogun', 'student', NULL),
  (109, 'ifeoma.chukwu10@students.treasurehome.school', '!', 'Ifeoma', 'Chukwu', 'student', NULL),
  (110, 'musa.aliyu11@students.treasurehome.school', '!', 'Musa', 'Aliyu', 'student', NULL),
  (111, 'chioma.obi12@students.treasurehome.school', '!', 'Chioma', 'Obi', 'student', NULL),
  (112, 'dayo.akinola13@students.treasurehome.school', '!', 'Dayo', 'Akinola', 'student', NULL),
  (113, 'fatima.sule14@students.treasurehome.school', '!', 'Fatima', 'Sule', 'student', NULL),
  (114, 'obinna.nwosu15@students.treasurehome.school', '!', 'Obinna', 'Nwosu', 'student', NULL),
  (115, 'yetunde.fashola16@students.treasurehome.school', '!', 'Yetunde', 'Fashola', 'student', NULL),
  (116, 'sani.garba17@students.treasurehome.school', '!', 'Sani', 'Garba', 'student', NULL),
  (117, 'ada.onyeka18@students.treasurehome.school', '!', 'Ada', 'Onyeka', 'student', NULL),
  (118, 'femi.adeleke19@students.treasurehome.school', '!', 'Femi', 'Adeleke', 'student', NULL),
  (119, 'hauwa.yakubu20@students.treasurehome.school', '!', 'Hauwa', 'Yakubu', 'student', NULL),
  (120, 'ikenna.okafor21@students.treasurehome.school', '!', 'Ikenna', 'Okafor', 'student', NULL),
  (121, 'kemi.adebayo22@students.treasurehome.school', '!', 'Kemi', 'Adebayo', 'student', NULL),
  (122, 'yusuf.nwachukwu23@students.treasurehome.school', '!', 'Yusuf', 'Nwachukwu', 'student', NULL),
  (123, 'nneka.abubakar24@students.treasurehome.school', '!', 'Nneka', 'Abubakar', 'student', NULL),
  (124, 'bola.eze25@students.treasurehome.school', '!', 'Bola', 'Eze', 'student', NULL),
  (125, 'ngozi.ogunleye26@students.treasurehome.school', '!', 'Ngozi', 'Ogunleye', 'student', NULL),
  (126, 'tochukwu.okeke27@students.treasurehome.school', '!', 'Tochukwu', 'Okeke', 'student', NULL),
  (127, 'aminat.danjuma28@students.treasurehome.school', '!', 'Aminat', 'Danjuma', 'student', NULL),
  (128, 'gbenga.balogun29@students.treasurehome.school', '!', 'Gbenga', 'Balogun', 'student', NULL),
  (129, 'ebere.chukwu30@students.treasurehome.school', '!', 'Ebere', 'Chukwu', 'student', NULL),
  (130, 'kunle.okafor31@students.treasurehome.school', '!', 'Kunle', 'Okafor', 'student', NULL),
  (131, 'maryam.adebayo32@students.treasurehome.school', '!', 'Maryam', 'Adebayo', 'student', NULL),
  (132, 'chidi.nwachukwu33@students.treasurehome.school', '!', 'Chidi', 'Nwachukwu', 'student', NULL),
  (133, 'sade.abubakar34@students.treasurehome.school', '!', 'Sade', 'Abubakar', 'student', NULL),
  (134, 'abdul.eze35@students.treasurehome.school', '!', 'Abdul', 'Eze', 'student', NULL),
  (135, 'ifunanya.ogunleye36@students.treasurehome.school', '!', 'Ifunanya', 'Ogunleye', 'student', NULL),
  (136, 'wale.okeke37@students.treasurehome.school', '!', 'Wale', 'Okeke', 'student', NULL),
  (137, 'rukayat.danjuma38@students.treasurehome.school', '!', 'Rukayat', 'Danjuma', 'student', NULL),
  (138, 'nnamdi.balogun39@students.treasurehome.school', '!', 'Nnamdi', 'Balogun', 'student', NULL),
  (139, 'titi.chukwu40@students.treasurehome.school', '!', 'Titi', 'Chukwu', 'student', NULL),
  (200, 'aisha.okafor200@parents.example.com', '!', 'Aisha', 'Okafor', 'parent', '+2348031000200'),
  (201, 'chukwuma.adebayo201@parents.example.com', '!', 'Chukwuma', 'Adebayo', 'parent', '+2348031000201'),
  (202, 'ifeanyi.nwachukwu202@parents.example.com', '!', 'Ifeanyi', 'Nwachukwu', 'parent', '+2348031000202'),
  (203, 'ngozi.abubakar203@parents.example.com', '!', 'Ngozi', 'Abubakar', 'parent', '+2348031000203'),
  (204, 'chukwuma.eze204@parents.example.com', '!', 'Chukwuma', 'Eze', 'parent', '+2348031000204'),
  (205, 'patience.ogunleye205@parents.example.com', '!', 'Patience', 'Ogunleye', 'parent', '+2348031000205'),
  (206, 'olusegun.okeke206@parents.example.com', '!', 'Olusegun', 'Okeke', 'parent', '+2348031000206'),
  (207, 'ahmed.danjuma207@parents.example.com', '!', 'Ahmed', 'Danjuma', 'parent', '+2348031000207'),
  (208, 'patience.balogun208@parents.example.com', '!', 'Patience', 'Balogun', 'parent', '+2348031000208'),
  (209, 'ifeanyi.chukwu209@parents.example.com', '!', 'Ifeanyi', 'Chukwu', 'parent', '+2348031000209'),
  (210, 'chukwuma.aliyu210@parents.example.com', '!', 'Chukwuma', 'Aliyu', 'parent', '+2348031000210'),
  (211, 'olusegun.obi211@parents.example.com', '!', 'Olusegun', 'Obi', 'parent', '+2348031000211'),
  (212, 'comfort.akinola212@parents.example.com', '!', 'Comfort', 'Akinola', 'parent', '+2348031000212'),
  (213, 'comfort.sule213@parents.example.com', '!', 'Comfort', 'Sule', 'parent', '+2348031000213'),
  (214, 'ahmed.nwosu214@parents.example.com', '!', 'Ahmed', 'Nwosu', 'parent', '+2348031000214'),
  (215, 'patience.fashola215@parents.example.com', '!', 'Patience', 'Fashola', 'parent', '+2348031000215'),
  (216, 'ifeanyi.garba216@parents.example.com', '!', 'Ifeanyi', 'Garba', 'parent', '+2348031000216'),
  (217, 'babatunde.onyeka217@parents.example.com', '!', 'Babatunde', 'Onyeka', 'parent', '+2348031000217'),
  (218, 'aisha.adeleke218@parents.example.com', '!', 'Aisha', 'Adeleke', 'parent', '+2348031000218'),
  (219, 'olusegun.yakubu219@parents.example.com', '!', 'Olusegun', 'Yakubu', 'parent', '+2348031000219'),
  (220, 'babatunde.okafor220@parents.example.com', '!', 'Babatunde', 'Okafor', 'parent', '+2348031000220'),
  (221, 'aisha.adebayo221@parents.example.com', '!', 'Aisha', 'Adebayo', 'parent', '+2348031000221'),
  (222, 'comfort.nwachukwu222@parents.example.com', '!', 'Comfort', 'Nwachukwu', 'parent', '+2348031000222'),
  (223, 'patience.abubakar223@parents.example.com', '!', 'Patience', 'Abubakar', 'parent', '+2348031000223'),
  (224, 'olusegun.eze224@parents.example.com', '!', 'Olusegun', 'Eze', 'parent', '+2348031000224'),
  (225, 'olusegun.ogunleye225@parents.example.com', '!', 'Olusegun', 'Ogunleye', 'parent', '+2348031000225'),
  (226, 'chukwuma.okeke226@parents.example.com', '!', 'Chukwuma', 'Okeke', 'parent', '+2348031000226'),
  (227, 'patience.danjuma227@parents.example.com', '!', 'Patience', 'Danjuma', 'parent', '+2348031000227'),
  (228, 'ifeanyi.balogun228@parents.example.com', '!', 'Ifeanyi', 'Balogun', 'parent', '+2348031000228'),
  (229, 'ngozi.chukwu229@parents.example.com', '!', 'Ngozi', 'Chukwu', 'parent', '+2348031000229');

INSERT INTO classes (id, name, level, capacity) VALUES
  (1, 'JSS 1A', 'JSS 1', 35),
  (2, 'JSS 2A', 'JSS 2', 35),
  (3, 'JSS 3A', 'JSS 3', 35),
  (4, 'SS 1A', 'SS 1', 35),
  (5, 'SS 2A', 'SS 2', 35),
  (6, 'SS 3A', 'SS 3', 35);

INSERT INTO class_teachers (class_id, teacher_id, is_form_teacher) VALUES
  (1, 10, True),
  (2, 10, False),
  (2, 11, True),
  (3, 11, False),
  (3, 12, True),
  (4, 12, False),
  (4, 13, True),
  (5, 13, False),
  (5, 14, True),
  (6, 14, False),
  (6, 15, True),
  (1, 15, False);

INSERT INTO subjects (id, name, code) VALUES
  (1, 'Mathematics', 'MTH'),
  (2, 'English Language', 'ENG'),
  (3, 'Basic Science', 'BSC'),
  (4, 'Civic Education', 'CVE'),
  (5, 'Computer Studies', 'CMP'),
  (6, 'Agricultural Science', 'AGR'),
  (7, 'Yoruba', 'YOR'),
  (8, 'Physics', 'PHY');

INSERT INTO academic_terms (id, name, session, starts_on, ends_on, is_active) VALUES
  (1, 'First Term', '2025/2026', '2025-09-15', '2025-12-19', true),
  (2, 'Second Term', '2025/2026', '2026-01-12', '2026-04-10', false);

INSERT INTO students (id, user_id, class_id, admission_number, date_of_birth) VALUES
  (1, 100, 1, 'TH/2025/001', '2014-08-19'),
  (2, 101, 2, 'TH/2024/002', '2013-08-12'),
  (3, 102, 3, 'TH/2023/003', '2012-05-08'),
  (4, 103, 4, 'TH/2022/004', '2011-03-23'),
  (5, 104, 5, 'TH/2021/005', '2010-04-03'),
  (6, 105, 6, 'TH/2020/006', '2009-10-10'),
  (7, 106, 1, 'TH/2025/007', '2014-09-16'),
  (8, 107, 2, 'TH/2024/008', '2013-06-24'),
  (9, 108, 3, 'TH/2023/009', '2012-08-10'),
  (10, 109, 4, 'TH/2022/010', '2011-10-03'),
  (11, 110, 5, 'TH/2021/011', '2010-02-17'),
  (12, 111, 6, 'TH/2020/012', '2009-07-06'),
  (13, 112, 1, 'TH/2025/013', '2014-06-05'),
  (14, 113, 2, 'TH/2024/014', '2013-08-14'),
  (15, 114, 3, 'TH/2023/015', '2012-01-22'),
  (16, 115, 4, 'TH/2022/016', '2011-02-25'),
  (17, 116, 5, 'TH/2021/017', '2010-09-19'),
  (18, 117, 6, 'TH/2020/018', '2009-06-11'),
  (19, 118, 1, 'TH/2025/019', '2014-12-12'),
  (20, 119, 2, 'TH/2024/020', '2013-10-16'),
  (21, 120, 3, 'TH/2023/021', '2012-10-26'),
  (22, 121, 4, 'TH/2022/022', '2011-08-03'),
  (23, 122, 5, 'TH/2021/023', '2010-02-09'),
  (24, 123, 6, 'TH/2020/024', '2009-08-23'),
  (25, 124, 1, 'TH/2025/025', '2014-11-03'),
  (26, 125, 2, 'TH/2024/026', '2013-01-24'),
  (27, 126, 3, 'TH/2023/027', '2012-12-10'),
  (28, 127, 4, 'TH/2022/028', '2011-11-19'),
  (29, 128, 5, 'TH/2021/029', '2010-11-27'),
  (30, 129, 6, 'TH/2020/030', '2009-08-10'),
  (31, 130, 1, 'TH/2025/031', '2014-12-13'),
  (32, 131, 2, 'TH/2024/032', '2013-11-12'),
  (33, 132, 3, 'TH/2023/033', '2012-01-15'),
  (34, 133, 4, 'TH/2022/034', '2011-06-06'),
  (35, 134, 5, 'TH/2021/035', '2010-10-04'),
  (36, 135, 6, 'TH/2020/036', '2009-08-02'),
  (37, 136, 1, 'TH/2025/037', '2014-04-25'),
  (38, 137, 2, 'TH/2024/038', '2013-05-05'),
  (39, 138, 3, 'TH/2023/039', '2012-12-08'),
  (40, 139, 4, 'TH/2022/040', '2011-07-13');

INSERT INTO parent_students (parent_id, student_id, relationship) VALUES
  (200, 1, 'father'),
  (201, 2, 'mother'),
  (202, 3, 'mother'),
  (203, 4, 'father'),
  (204, 5, 'father'),
  (205, 6, 'guardian'),
  (206, 7, 'father'),
  (207, 8, 'mother'),
  (208, 9, 'father'),
  (209, 10, 'guardian'),
  (210, 11, 'father'),
  (211, 12, 'guardian'),
  (212, 13, 'father'),
  (213, 14, 'father'),
  (214, 15, 'guardian'),
  (215, 16, 'father'),
  (216, 17, 'mother'),
  (217, 18, 'mother'),
  (218, 19, 'mother'),
  (219, 20, 'mother'),
  (220, 21, 'mother'),
  (221, 22, 'mother'),
  (222, 23, 'guardian'),
  (223, 24, 'mother'),
  (224, 25, 'mother'),
  (225, 26, 'father'),
  (226, 27, 'guardian'),
  (227, 28, 'mother'),
  (228, 29, 'father'),
  (229, 30, 'father'),
  (200, 31, 'mother'),
  (201, 32, 'mother'),
  (202, 33, 'father'),
  (203, 34, 'guardian'),
  (204, 35, 'father'),
  (205, 36, 'guardian'),
  (206, 37, 'guardian'),
  (207, 38, 'father'),
  (208, 39, 'mother'),
  (209, 40, 'guardian');

INSERT INTO exams (id, class_id, subject_id, term_id, title, instructions, duration_minutes, starts_at, status, created_by, updated_by) VALUES
  (1, 1, 1, 1, 'JSS 1 Mathematics Mid-Term Test', 'Answer all questions. Show your working.', 45, '2025-11-03 09:00+01', 'published', 10, 10),
  (2, 1, 2, 1, 'JSS 1 English First Term Examination', 'Section A: comprehension. Section B: essay (choose one).', 90, '2025-12-08 09:00+01', 'draft', 10, 10),
  (3, 4, 8, 1, 'SS 1 Physics Mid-Term Test', 'Use g = 10 m/s^2. Calculators are allowed.', 60, '2025-11-04 11:00+01', 'published', 13, 13),
  (4, 6, 1, 1, 'SS 3 Mathematics Mock Examination', 'WAEC format: Paper 1 objective, Paper 2 theory.', 150, NULL, 'draft', 2, 2);


-- Past the fixed ids.
SELECT setval(pg_get_serial_sequence(t, 'id'), 1000)
FROM unnest(ARRAY[
    'users', 'classes', 'subjects', 'academic_terms', 'students', 'exams',
    'exam_sessions', 'exam_results', 'grading_tasks', 'attendance',
    'report_cards', 'announcements', 'vacancies', 'applications',
    'notifications'
]) AS t;

COMMIT;
